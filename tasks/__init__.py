"""Invoke tasks for nodeimage: each parses its options and calls one library function.

Run `invoke --list` for the tasks and `invoke --help <task>` for their options. The tasks live in three
modules (images, clusters, dev) and are all at the top level here: `invoke build`, not `invoke images.build`.
Every task has --debug and --json and turns errors into one message (nodeimage.cli.task).

Each task: typed options, a docstring whose first line reads well in `invoke --list`, help={...} for
every option, and a body that calls one library function (imported there, so `invoke --list` stays fast).
"""

from invoke import Collection

from . import clusters, dev, images

ns = Collection(
    images.base,
    images.doctor,
    images.build,
    images.clean,
    images.ova,
    images.lock,
    images.fetch,
    images.verify,
    images.repro,
    clusters.seed,
    clusters.up,
    clusters.down,
    clusters.acceptance,
    clusters.test_real,
    dev.test,
    dev.bench,
)

"""nodeimage: build golden Kubernetes node images reproducibly."""

__version__ = "0.1.0"

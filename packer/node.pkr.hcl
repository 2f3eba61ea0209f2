# nodeimage golden node image, OS layer: the qemu builder boots the base image,
# the OS layer's stage (lib.sh, build.env, os/) is uploaded, provision/os/NN-*.sh
# run in order as root, and the manifest post-processor records the artifact.
# The stack and node layers run afterwards in a chroot of the image tree on the
# build host (nodeimage.layers), with this VM powered off.
#
# Works with Debian's packer 1.6.6 (qemu builder built in, so there is no
# `packer { required_plugins {...} }` block: 1.6.6 rejects it) and with current
# packer, where nodeimage adds packer/plugins.pkr.hcl and runs `packer init`.
# nodeimage.packer writes the variable file; see nodeimage/packer.py.

variable "base_image" {
  type        = string
  description = "Path of the base qcow2 (Ubuntu cloud image or a base built by `invoke base`)."
}

variable "base_checksum" {
  type        = string
  description = "sha256:<hex> of base_image, verified by packer before it boots it."
}

variable "output_directory" {
  type = string
}

variable "vm_name" {
  type    = string
  default = "node.qcow2"
}

variable "accelerator" {
  type    = string
  default = "tcg"
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type    = number
  default = 2048
}

variable "disk_size" {
  type        = string
  description = "Virtual disk size, e.g. 10G; cloud-init's growpart grows the root partition into it."
  default     = "10G"
}

variable "seed_files" {
  type        = list(string)
  description = "user-data and meta-data of the build-time NoCloud seed (creates the build user)."
}

variable "ssh_username" {
  type    = string
  default = "nodeimage-build"
}

variable "ssh_private_key_file" {
  type = string
}

variable "ssh_timeout" {
  type    = string
  default = "20m"
}

variable "stage_dir" {
  type        = string
  description = "Host directory uploaded to /var/tmp/nodeimage: lib.sh, build.env, os/."
}

variable "scripts" {
  type        = list(string)
  description = "The OS layer's steps (provision/os/NN-*.sh) in the order they run."
}

variable "debug" {
  type        = string
  description = "\"1\" traces every provision step (invoke --debug)."
  default     = ""
}

variable "serial_log" {
  type = string
}

variable "manifest_path" {
  type = string
}

source "qemu" "node" {
  disk_image       = true
  iso_url          = var.base_image
  iso_checksum     = var.base_checksum
  use_backing_file = false
  output_directory = var.output_directory
  vm_name          = var.vm_name
  format           = "qcow2"
  disk_size        = var.disk_size
  disk_interface   = "virtio"
  # Blocks the build frees (fstrim, deleted files) are freed in the image too.
  disk_discard = "unmap"
  net_device   = "virtio-net"
  accelerator  = var.accelerator
  cpus         = var.cpus
  memory       = var.memory
  headless     = true
  cd_files     = var.seed_files
  cd_label     = "cidata"

  ssh_username           = var.ssh_username
  ssh_private_key_file   = var.ssh_private_key_file
  ssh_timeout            = var.ssh_timeout
  ssh_handshake_attempts = 100

  # The build user is deleted last, from a root shell that sudo started
  # before the deletion, then the VM powers off.
  shutdown_command = "sudo sh -c 'userdel --force --remove ${var.ssh_username}; rm -f /etc/sudoers.d/90-cloud-init-users; sync; shutdown -P now'"
  shutdown_timeout = "5m"

  qemuargs = [
    ["-serial", "file:${var.serial_log}"],
  ]
}

build {
  sources = ["source.qemu.node"]

  provisioner "shell" {
    inline = ["mkdir -p /var/tmp/nodeimage"]
  }

  provisioner "file" {
    source      = "${var.stage_dir}/"
    destination = "/var/tmp/nodeimage"
  }

  provisioner "shell" {
    scripts          = var.scripts
    environment_vars = ["NODEIMAGE_STAGE=/var/tmp/nodeimage", "DEBIAN_FRONTEND=noninteractive", "DEBUG=${var.debug}"]
    execute_command  = "chmod +x '{{ .Path }}'; sudo env {{ .Vars }} bash '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = true
  }
}

# Compute Engine instance
#
# One Compute Engine VM with a Debian boot disk, Shielded VM on, on the given network. Outputs the
# instance id, self link and internal IP.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "name" {
  type        = string
  description = "Instance name: lowercase letters, digits and hyphens, starting with a letter."

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "machine_type" {
  type        = string
  description = "Machine type."
  default     = "e2-micro"
}

variable "zone" {
  type        = string
  description = "Zone to run in."
  default     = "us-central1-a"
}

variable "image" {
  type        = string
  description = "Boot disk image."
  default     = "debian-cloud/debian-12"
}

variable "disk_size_gb" {
  type        = number
  description = "Boot disk size in GB."
  default     = 10

  validation {
    condition     = var.disk_size_gb >= 10 && var.disk_size_gb <= 65536
    error_message = "disk_size_gb must be between 10 and 65536."
  }
}

variable "network" {
  type        = string
  description = "VPC network."
  default     = "default"
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to the instance."
  default     = {}
}

variable "network_tags" {
  type        = list(string)
  description = "Network tags (firewall targets)."
  default     = []
}

resource "google_compute_instance" "this" {
  name         = var.name
  machine_type = var.machine_type
  zone         = var.zone
  labels       = merge({ "managed-by" = "multicloud" }, var.labels)
  tags         = var.network_tags

  boot_disk {
    initialize_params {
      image = var.image
      size  = var.disk_size_gb
    }
  }

  network_interface {
    network = var.network
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }
}

output "instance_id" {
  description = "The instance's id."
  value       = google_compute_instance.this.instance_id
}

output "self_link" {
  description = "The instance's self link."
  value       = google_compute_instance.this.self_link
}

output "internal_ip" {
  description = "The instance's internal IP address."
  value       = google_compute_instance.this.network_interface[0].network_ip
}

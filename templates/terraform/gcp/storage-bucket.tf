# Cloud Storage bucket
#
# A private Google Cloud Storage bucket: uniform bucket-level access, public access prevention
# enforced, versioning on, with labels. Outputs the bucket's name, URL and self link.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "bucket_name" {
  type        = string
  description = "Globally unique bucket name: 3-63 lowercase letters, digits, hyphens, underscores and dots."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3 to 63 lowercase letters, digits, hyphens, underscores or dots, starting and ending with a letter or digit."
  }
}

variable "location" {
  type        = string
  description = "Bucket location: a multi-region (US, EU, ASIA) or a region."
  default     = "US"
}

variable "storage_class" {
  type        = string
  description = "Default storage class."
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.storage_class)
    error_message = "storage_class must be one of STANDARD, NEARLINE, COLDLINE, ARCHIVE."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Delete the objects too when the bucket is destroyed."
  default     = false
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to the bucket."
  default     = {}
}

resource "google_storage_bucket" "this" {
  name                        = var.bucket_name
  location                    = var.location
  storage_class               = var.storage_class
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = merge({ "managed-by" = "multicloud" }, var.labels)

  versioning {
    enabled = true
  }
}

output "bucket_name" {
  description = "The bucket's name."
  value       = google_storage_bucket.this.name
}

output "bucket_url" {
  description = "The bucket's gs:// URL."
  value       = google_storage_bucket.this.url
}

output "self_link" {
  description = "The bucket's self link."
  value       = google_storage_bucket.this.self_link
}

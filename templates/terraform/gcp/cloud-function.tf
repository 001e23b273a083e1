# Cloud Function (2nd gen)
#
# An HTTP-triggered Cloud Function (2nd gen) built from source already in a Cloud Storage bucket.
# Outputs the function's URL and name.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "function_name" {
  type        = string
  description = "Function name: lowercase letters, digits and hyphens, starting with a letter."

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.function_name))
    error_message = "function_name must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region to run in."
  default     = "us-central1"
}

variable "runtime" {
  type        = string
  description = "Runtime of the source."
  default     = "python312"

  validation {
    condition     = contains(["python310", "python311", "python312", "nodejs18", "nodejs20", "go122", "java17"], var.runtime)
    error_message = "runtime must be one of python310, python311, python312, nodejs18, nodejs20, go122, java17."
  }
}

variable "entry_point" {
  type        = string
  description = "Function to call in the source."
  default     = "handler"
}

variable "source_bucket" {
  type        = string
  description = "Bucket holding the zipped source."
}

variable "source_object" {
  type        = string
  description = "Object name of the zipped source in source_bucket."
}

variable "memory" {
  type        = string
  description = "Memory available to each instance."
  default     = "256M"
}

variable "max_instances" {
  type        = number
  description = "Upper bound on instances."
  default     = 3

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "environment" {
  type        = map(string)
  description = "Environment variables of the function."
  default     = {}
}

resource "google_cloudfunctions2_function" "this" {
  name     = var.function_name
  location = var.region
  labels   = { "managed-by" = "multicloud" }

  build_config {
    runtime     = var.runtime
    entry_point = var.entry_point
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    available_memory      = var.memory
    max_instance_count    = var.max_instances
    environment_variables = var.environment
  }
}

output "function_name" {
  description = "The function's name."
  value       = google_cloudfunctions2_function.this.name
}

output "url" {
  description = "The function's HTTPS URL."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

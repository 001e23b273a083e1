# Azure storage account (terraform)
#
# A StorageV2 account with HTTPS only, TLS 1.2, no public blob access, in an existing resource
# group. Outputs the account's id, name and primary blob endpoint.

terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.0"
    }
  }
}

variable "storage_account_name" {
  type        = string
  description = "Globally unique name: 3-24 lowercase letters and digits."

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.storage_account_name))
    error_message = "storage_account_name must be 3 to 24 lowercase letters or digits."
  }
}

variable "resource_group_name" {
  type        = string
  description = "Existing resource group to create the account in."
}

variable "location" {
  type        = string
  description = "Azure region."
  default     = "eastus"
}

variable "account_tier" {
  type        = string
  description = "Performance tier."
  default     = "Standard"

  validation {
    condition     = contains(["Standard", "Premium"], var.account_tier)
    error_message = "account_tier must be Standard or Premium."
  }
}

variable "replication_type" {
  type        = string
  description = "Replication."
  default     = "LRS"

  validation {
    condition     = contains(["LRS", "GRS", "RAGRS", "ZRS", "GZRS", "RAGZRS"], var.replication_type)
    error_message = "replication_type must be one of LRS, GRS, RAGRS, ZRS, GZRS, RAGZRS."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to the account."
  default     = {}
}

resource "azurerm_storage_account" "this" {
  name                            = var.storage_account_name
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_kind                    = "StorageV2"
  account_tier                    = var.account_tier
  account_replication_type        = var.replication_type
  https_traffic_only_enabled      = true
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  tags                            = merge({ "managed-by" = "multicloud" }, var.tags)
}

output "storage_account_id" {
  description = "The account's resource id."
  value       = azurerm_storage_account.this.id
}

output "storage_account_name" {
  description = "The account's name."
  value       = azurerm_storage_account.this.name
}

output "primary_blob_endpoint" {
  description = "The blob service endpoint."
  value       = azurerm_storage_account.this.primary_blob_endpoint
}

# EC2 compute instance
#
# One EC2 instance with an encrypted gp3 root volume and IMDSv2 required. The AMI is the latest
# Amazon Linux 2 image unless `ami` is given; the subnet is the default VPC's unless `subnet_id`
# is given. Outputs the instance id, its private IP and the AMI used.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "name" {
  type        = string
  description = "Name tag of the instance."
  default     = "multicloud-instance"

  validation {
    condition     = length(var.name) >= 1 && length(var.name) <= 255
    error_message = "name must be 1 to 255 characters long."
  }
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type."
  default     = "t3.micro"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like t3.micro."
  }
}

variable "ami" {
  type        = string
  description = "AMI id; empty: the latest Amazon Linux 2 AMI matching ami_name_filter."
  default     = ""
}

variable "ami_name_filter" {
  type        = string
  description = "Name pattern of the Amazon-owned AMI used when ami is empty."
  default     = "amzn2-ami-hvm-*-x86_64-gp2"
}

variable "subnet_id" {
  type        = string
  description = "Subnet to launch in; empty: the default VPC."
  default     = ""
}

variable "root_volume_size" {
  type        = number
  description = "Root volume size in GiB."
  default     = 8

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384
    error_message = "root_volume_size must be between 8 and 16384 GiB."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to the instance."
  default     = {}
}

data "aws_ami" "selected" {
  count       = var.ami == "" ? 1 : 0
  most_recent = true
  owners      = ["amazon"]

  filter {
    name   = "name"
    values = [var.ami_name_filter]
  }
}

locals {
  ami_id = var.ami != "" ? var.ami : data.aws_ami.selected[0].id
}

resource "aws_instance" "this" {
  ami           = local.ami_id
  instance_type = var.instance_type
  subnet_id     = var.subnet_id != "" ? var.subnet_id : null

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_size = var.root_volume_size
    volume_type = "gp3"
    encrypted   = true
  }

  tags = merge({ "Name" = var.name, "managed-by" = "multicloud" }, var.tags)
}

output "instance_id" {
  description = "The instance's id."
  value       = aws_instance.this.id
}

output "private_ip" {
  description = "The instance's private IPv4 address."
  value       = aws_instance.this.private_ip
}

output "public_ip" {
  description = "The instance's public IPv4 address, if any."
  value       = aws_instance.this.public_ip
}

output "ami_id" {
  description = "The AMI the instance runs."
  value       = local.ami_id
}

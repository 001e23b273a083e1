# Lambda function
#
# A Lambda function whose code is a zip uploaded by this template to an S3 bucket it creates (no
# archive provider needed). By default it deploys a small Python handler that answers with a
# greeting; pass your own zip as base64 in code_zip_base64. Also creates the execution role.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "function_name" {
  type        = string
  description = "Function name: 1-64 letters, digits, hyphens and underscores."

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "function_name must be 1 to 64 letters, digits, hyphens or underscores."
  }
}

variable "runtime" {
  type        = string
  description = "Lambda runtime of the code."
  default     = "python3.12"

  validation {
    condition     = contains(["python3.10", "python3.11", "python3.12", "python3.13", "nodejs18.x", "nodejs20.x", "nodejs22.x"], var.runtime)
    error_message = "runtime must be one of python3.10, python3.11, python3.12, python3.13, nodejs18.x, nodejs20.x, nodejs22.x."
  }
}

variable "handler" {
  type        = string
  description = "Entry point in the code (file.function)."
  default     = "index.handler"
}

variable "memory_size" {
  type        = number
  description = "Memory in MB."
  default     = 128

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  type        = number
  description = "Timeout in seconds."
  default     = 10

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900
    error_message = "timeout must be between 1 and 900 seconds."
  }
}

variable "environment" {
  type        = map(string)
  description = "Environment variables of the function."
  default     = {}
}

variable "code_zip_base64" {
  type        = string
  description = "The function's code: a zip archive, base64-encoded. Default: a Python greeting handler."
  default     = "UEsDBBQAAAAAAAAAIVze3qWlwgAAAMIAAAAIAAAAaW5kZXgucHlpbXBvcnQganNvbgppbXBvcnQgb3MKCgpkZWYgaGFuZGxlcihldmVudCwgY29udGV4dCk6CiAgICBncmVldGluZyA9IG9zLmVudmlyb24uZ2V0KCJHUkVFVElORyIsICJoZWxsbyBmcm9tIG11bHRpY2xvdWQiKQogICAgcmV0dXJuIHsic3RhdHVzQ29kZSI6IDIwMCwgImJvZHkiOiBqc29uLmR1bXBzKHsibWVzc2FnZSI6IGdyZWV0aW5nfSl9ClBLAQIUAxQAAAAAAAAAIVze3qWlwgAAAMIAAAAIAAAAAAAAAAAAAACkAQAAAABpbmRleC5weVBLBQYAAAAAAQABADYAAADoAAAAAAA="
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to every resource."
  default     = {}
}

locals {
  tags = merge({ "managed-by" = "multicloud" }, var.tags)
}

resource "aws_s3_bucket" "code" {
  bucket_prefix = substr("lambda-code-${lower(replace(var.function_name, "_", "-"))}-", 0, 37)
  force_destroy = true
  tags          = local.tags
}

resource "aws_s3_object" "code" {
  bucket = aws_s3_bucket.code.id
  # A new key for new code: the function is updated whenever the code changes.
  key            = "${var.function_name}-${md5(var.code_zip_base64)}.zip"
  content_base64 = var.code_zip_base64
}

resource "aws_iam_role" "this" {
  name_prefix = substr("${var.function_name}-", 0, 38)
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

# Least privilege: the function may write its own logs and nothing else.
resource "aws_iam_role_policy" "logs" {
  name = "write-logs"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "arn:aws:logs:*:*:log-group:/aws/lambda/${var.function_name}:*"
    }]
  })
}

resource "aws_lambda_function" "this" {
  function_name = var.function_name
  role          = aws_iam_role.this.arn
  runtime       = var.runtime
  handler       = var.handler
  memory_size   = var.memory_size
  timeout       = var.timeout
  s3_bucket     = aws_s3_object.code.bucket
  s3_key        = aws_s3_object.code.key
  tags          = local.tags

  dynamic "environment" {
    for_each = length(var.environment) > 0 ? [1] : []
    content {
      variables = var.environment
    }
  }

  depends_on = [aws_iam_role_policy.logs]
}

output "function_name" {
  description = "The function's name."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "The function's ARN."
  value       = aws_lambda_function.this.arn
}

output "invoke_arn" {
  description = "ARN for invoking the function from API Gateway."
  value       = aws_lambda_function.this.invoke_arn
}

output "role_arn" {
  description = "The execution role's ARN."
  value       = aws_iam_role.this.arn
}

output "code_bucket" {
  description = "The bucket holding the code."
  value       = aws_s3_bucket.code.id
}

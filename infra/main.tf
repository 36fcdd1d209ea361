# Resource group, naming and tags shared by every other file.

locals {
  # Stable per subscription/project/environment, so re-applies keep names while
  # two environments (or two subscriptions) never collide on global names.
  suffix = coalesce(
    var.name_suffix,
    substr(sha1("${var.subscription_id}/${var.project}/${var.environment}"), 0, 6),
  )

  # Hyphenated base for resources that allow hyphens, compact base for the
  # ones that only allow lowercase letters and digits (storage, vault, ACR).
  name    = "${var.project}-${var.environment}-${local.suffix}"
  compact = "${var.project}${var.environment}${local.suffix}"

  resource_group_name = coalesce(var.resource_group_name, "rg-${var.project}-${var.environment}")

  tags = merge(
    {
      project     = var.project
      environment = var.environment
      managed-by  = "terraform"
    },
    var.tags,
  )
}

resource "azurerm_resource_group" "this" {
  count = var.create_resource_group ? 1 : 0

  name     = local.resource_group_name
  location = var.location
  tags     = local.tags
}

data "azurerm_resource_group" "existing" {
  count = var.create_resource_group ? 0 : 1

  name = local.resource_group_name
}

locals {
  # Every resource refers to the group through these two locals, whether it
  # was created here or handed over by the platform team.
  rg_name     = var.create_resource_group ? azurerm_resource_group.this[0].name : data.azurerm_resource_group.existing[0].name
  rg_location = var.create_resource_group ? azurerm_resource_group.this[0].location : data.azurerm_resource_group.existing[0].location
}

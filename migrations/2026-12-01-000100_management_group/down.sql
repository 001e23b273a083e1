ALTER TABLE deployments DROP COLUMN management_group;

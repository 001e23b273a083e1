-- The management group a management-group-scope Azure deployment is made at (NULL for every
-- other deployment).
ALTER TABLE deployments ADD COLUMN management_group TEXT;

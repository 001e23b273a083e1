DROP TABLE terraform_states;
DROP TABLE deployment_logs;
DROP TABLE deployments;

DROP TABLE batches; DROP TABLE pull_queue; DROP TABLE events; DROP TABLE trigger_configs; DROP TABLE api_keys; DROP TABLE accounts;

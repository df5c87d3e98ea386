DROP INDEX batches_state;

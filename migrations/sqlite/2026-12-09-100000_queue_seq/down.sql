DROP TABLE queue_seq;

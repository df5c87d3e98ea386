DROP TABLE paint_contexts;

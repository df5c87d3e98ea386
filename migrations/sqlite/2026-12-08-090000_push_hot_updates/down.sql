-- PostgreSQL only (a table's fillfactor); SQLite has no such setting.
SELECT 1;

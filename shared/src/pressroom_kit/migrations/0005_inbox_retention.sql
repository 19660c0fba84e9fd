-- The consumer deletes its inbox rows older than the retention in small batches; this
-- index lets each batch find them without scanning the table.
CREATE INDEX inbox_consumer_processed_at ON inbox (consumer, processed_at);

-- Each embedded connection has queues of its own: the store keys a queue by
-- `connection:queue`. Queues made before belonged to the one default connection, `local`.
UPDATE queues SET name = 'local:' || name;
UPDATE queue_messages SET queue = 'local:' || queue;

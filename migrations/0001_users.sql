-- The transactional users table, as the API owns it. Columns of no analytical
-- value (is_a_dog, api_version, and whatever comes later) live here and never
-- reach Kafka: the publication below lists only the event's source columns.
CREATE TABLE IF NOT EXISTS users (
    id           serial PRIMARY KEY,
    username     varchar(100) NOT NULL UNIQUE,
    country_code varchar(2)   NOT NULL,
    created_at   timestamp    NOT NULL,
    is_a_dog     boolean      NOT NULL DEFAULT false,
    api_version  varchar(20)  NOT NULL
);

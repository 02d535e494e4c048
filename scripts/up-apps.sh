# Sourced by up.sh once PostgreSQL and Kafka are up: the users API and the
# streamer, once they exist.
:

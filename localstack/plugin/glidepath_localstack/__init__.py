"""glidepath's rehearsal stage inside LocalStack (see localstack/plugin/README.md)."""

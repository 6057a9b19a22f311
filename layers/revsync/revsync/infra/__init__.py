"""AWS adapters: boto3 clients, queues and secrets. Clients are created lazily and cached."""

"""Data access: PynamoDB models and the write path's conditional updates. All DynamoDB I/O lives here."""

"""Data access, one module per job; all DynamoDB I/O lives here. Adapters take their tables' names
(constructors, ``models.bind``) and read no settings."""

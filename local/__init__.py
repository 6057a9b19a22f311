"""The embedded local stack (dev only, never deployed): AWS on moto, handlers called in-process."""

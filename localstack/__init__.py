"""Local stand-ins for Azure services, used for development and tests without cloud access."""

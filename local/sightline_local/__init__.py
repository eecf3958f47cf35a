"""The embedded local stack: Sightline on one machine with no AWS account and no Docker."""

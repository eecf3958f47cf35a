"""Sightline's shared library: the code every Lambda function imports, shipped as a layer."""

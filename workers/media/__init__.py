"""Media I/O with PyAV and Pillow: probe, decode segments, encode, assemble."""

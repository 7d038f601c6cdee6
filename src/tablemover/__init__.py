"""tablemover: move live MySQL/MariaDB tables between clusters with a crash-safe cooperative cutover."""

__version__ = "0.1.0"

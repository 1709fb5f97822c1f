"""Launcher folder for the employee chat; the app itself is slm.webui (installed with the package)."""

"""Ingestion (validate, quarantine, publish atomically), labels and importers for real data sets."""

"""Telling people about launches: sending notifications and delivering them once acknowledged."""

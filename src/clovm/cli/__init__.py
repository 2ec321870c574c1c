"""Thin command-line front ends: parse, call the api/ or a driver, render."""

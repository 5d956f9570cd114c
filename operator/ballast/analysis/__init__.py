"""Objectives: presets, PromQL templating, judges; providers/ holds one file per metrics backend."""

"""Tests of graph/pipeline."""

"""Seeing a pipeline before running it: the dependency graph as a picture
(:mod:`aipc.viz.graph`) and the execution plan with its resource totals
(:mod:`aipc.viz.plan`)."""

"""Pseudo-word-token composers (Pic2Word, SEARLE, LinCIR). Filled in by the heads work."""

from __future__ import annotations

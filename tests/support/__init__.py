"""Builders shared by every test layer: tiny models, toy task data, ports, processes,
waiting, and the images' virtualenvs. One copy each, so a fix lands everywhere."""

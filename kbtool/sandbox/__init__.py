"""Isolation of candidate code: forked children, the zygote, namespaces, device lock."""

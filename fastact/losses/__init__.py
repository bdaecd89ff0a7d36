"""Loss functions fused with their gradient (registered on import)."""

"""Training of SuperRetina weights on fundus photographs with auto-generated labels."""

"""Looking inside networks: layer tables with convolution arithmetic and receptive fields."""

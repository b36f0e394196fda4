"""The networks: EfficientNet B0-B7 and L2 with stochastic depth and dropout, small nets, a registry."""

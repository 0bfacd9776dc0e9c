"""The ABCI 2.0 server CometBFT drives, and the build step that generates its messages."""

"""The registration service behind the door: catalogue, carts with 20-minute holds, seats."""

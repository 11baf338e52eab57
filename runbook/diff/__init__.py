"""What a change will run differently: two plans compared, their sources, their views."""

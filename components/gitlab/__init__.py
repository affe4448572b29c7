"""Resources in GitLab itself: the runners the fleet's managers authenticate as."""

"""Container images: names and pull policy (refs), the podman store of the
machine and of each lab (store), images built from Debian packages (build)."""

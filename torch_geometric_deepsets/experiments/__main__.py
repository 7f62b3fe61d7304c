from torch_geometric_deepsets.experiments.cli import cli

if __name__ == '__main__':
    cli()

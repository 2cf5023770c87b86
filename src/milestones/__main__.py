from milestones.cli import main

main()

from milestones.console import main

main()

"""The lab's live web view (`podnet lab ui`): model.py builds the picture's
document from the API's objects, feed.py bounds what is pushed, server.py
serves the page and the events, flowsrc.py feeds the flow log in."""

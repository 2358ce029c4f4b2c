// Stands for the Node built-ins (fs, path, url, events) that codec start-up
// code and vtk.js import but never call in a browser.
export default {};

// Stands for Node's 'events': an XML builder under vtk.js extends
// EventEmitter at load time (the viewer never calls it).
export class EventEmitter {
  on() {
    return this;
  }
  emit() {
    return false;
  }
}
export default EventEmitter;

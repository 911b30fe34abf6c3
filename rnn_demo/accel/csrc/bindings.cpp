// The Python module: every kernel entry point (kernels.h) under the name kernels.py calls.
#include <torch/python.h>

#include "kernels.h"
#include "threads.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &fused::gru_forward, "GRU layer forward over a whole sequence (batch-first)", py::arg("x"),
        py::arg("ids"), py::arg("p"), py::arg("seed"), py::arg("w_ih"), py::arg("b_ih"), py::arg("w_hh"),
        py::arg("b_hh"));
  m.def("gru_backward", &fused::gru_backward, "GRU layer backward over a whole sequence (batch-first)");
  m.def("lstm_forward", &fused::lstm_forward, "LSTM layer forward over a whole sequence (batch-first)", py::arg("x"),
        py::arg("ids"), py::arg("p"), py::arg("seed"), py::arg("w_ih"), py::arg("b_ih"), py::arg("w_hh"),
        py::arg("b_hh"));
  m.def("lstm_backward", &fused::lstm_backward, "LSTM layer backward over a whole sequence (batch-first)");
  m.def("dropout", &fused::dropout, "dropout from a counter-based random stream (its own backward)");
  m.def("threads_for_batch", &fused::threads_for_batch, "threads a batch of this size is split over");
  m.def("set_threads", &fused::set_threads, "the most threads the kernels use (0: torch's thread count)");
  m.def("embedding_rows_backward", &fused::embedding_rows_backward,
        "an embedding's gradient as (unique ids, summed rows)", py::arg("ids"), py::arg("grad"),
        py::arg("padding_idx"), py::arg("num_rows"), py::arg("p") = 0.0, py::arg("seed") = 0);
  m.def("adam_step", &fused::adam_step,
        "Adam step of a parameter group, dense or row gradients (torch's fused Adam's values)");
  m.def("classifier_step", &fused::classifier_step, "a classifier's whole training forward and backward pass");
  m.def("total_norm", &fused::total_norm, "2-norm of a list of float32 tensors, summed in double");
}
